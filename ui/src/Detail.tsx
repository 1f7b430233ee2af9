import { useEffect, useMemo, useState } from "react";
import { api } from "./api";
import { diffSize, requestDiff } from "./diff";
import {
  attemptClass,
  formatMs,
  formatTime,
  parseAttempts,
  parseFrames,
  prettyJson,
  statusClass,
} from "./format";
import type { Replayed, RequestRow, ServerInfo } from "./types";

const TABS = ["overview", "request", "upstream", "response", "frames", "headers"] as const;
type Tab = (typeof TABS)[number];

function Field({ name, children }: { name: string; children: React.ReactNode }) {
  return (
    <>
      <dt>{name}</dt>
      <dd>{children || <span className="muted">–</span>}</dd>
    </>
  );
}

/** Where the time went: llmux's own share against the provider's. */
function Timing({ row }: { row: RequestRow }) {
  const total = Math.max(row.latency_ms, 0.001);
  const upstream = Math.min(row.upstream_ms, total);
  const overhead = total - upstream;
  return (
    <div className="timing">
      <div className="bar" aria-label="timing">
        <span className="overhead" style={{ width: `${(overhead / total) * 100}%` }} />
        <span className="upstream" style={{ width: `${(upstream / total) * 100}%` }} />
      </div>
      <div className="legend">
        <span>total {formatMs(row.latency_ms)}</span>
        <span>first byte {formatMs(row.ttfb_ms)}</span>
        <span className="upstream-key">provider {formatMs(row.upstream_ms)}</span>
        <span className="overhead-key">llmux {formatMs(overhead)}</span>
      </div>
    </div>
  );
}

/** The answer as llmux recorded it: its text and tool calls, whatever the client's protocol. */
function Answer({ row }: { row: RequestRow }) {
  const calls = row.tool_calls;
  return (
    <div className="answer" data-testid="answer">
      {row.error && <div className="error-banner">{row.error}</div>}
      {row.response_text ? (
        <div className="text">{row.response_text}</div>
      ) : (
        !calls.length && <span className="muted">no text in the answer</span>
      )}
      {calls.map((call, i) => (
        <div className="tool-call" key={i}>
          <span className="tool-name">{call.name}</span>
          <pre>{prettyJson(call.arguments)}</pre>
        </div>
      ))}
    </div>
  );
}

/** What llmux's stages did to the request and its answer, stage by stage. */
function Interventions({ row, testId }: { row: RequestRow; testId: string }) {
  return (
    <ul className="interventions" data-testid={testId}>
      {row.interventions.map((intervention, i) => (
        <li key={i}>
          <span className="muted">{intervention.stage}</span> {intervention.detail}
        </li>
      ))}
    </ul>
  );
}

function Overview({ row }: { row: RequestRow }) {
  return (
    <>
      <dl className="fields">
        <Field name="request">{row.id}</Field>
        <Field name="started">{formatTime(row.started_at)}</Field>
        <Field name="session">{row.session_id}</Field>
        <Field name="client">
          {row.client_host} {row.user_agent && <span className="muted">{row.user_agent}</span>}
        </Field>
        <Field name="route">
          {row.frontend} → {row.backend}
        </Field>
        <Field name="model">
          {row.model_requested}
          {row.model_used && row.model_used !== row.model_requested && ` → ${row.model_used}`}
        </Field>
        {row.attempts.includes(";") && (
          <Field name="attempts">
            <ol className="attempts" data-testid="attempts">
              {parseAttempts(row.attempts).map((attempt, i) => (
                <li key={i}>
                  {attempt.leg}{" "}
                  <span className={`status ${attemptClass(attempt.result)}`}>{attempt.result}</span>
                </li>
              ))}
            </ol>
          </Field>
        )}
        {row.interventions.length > 0 && (
          <Field name="llmux did">
            <Interventions row={row} testId="interventions" />
          </Field>
        )}
        <Field name="key">{row.key_name}</Field>
        <Field name="status">
          <span className={`status ${statusClass(row.status)}`}>{row.status}</span>
          {row.stream && <span className="muted"> streamed</span>}
        </Field>
        <Field name="tokens">
          {row.input_tokens} in · {row.output_tokens} out
          {row.tokens_estimated && <span className="muted"> (estimated by llmux)</span>}
        </Field>
      </dl>
      <Timing row={row} />
      <h3>Prompt</h3>
      <div className="text prompt-text">{row.prompt_text || <span className="muted">–</span>}</div>
      <h3>Answer</h3>
      <Answer row={row} />
    </>
  );
}

function UpstreamDiff({ row }: { row: RequestRow }) {
  const lines = useMemo(
    () => requestDiff(row.client_request, row.upstream_request),
    [row.client_request, row.upstream_request],
  );
  if (!row.upstream_request) {
    return <div className="empty">Nothing was sent upstream (answered by llmux itself).</div>;
  }
  const { added, removed } = diffSize(lines);
  return (
    <>
      <p className="muted" data-testid="diff-summary">
        What llmux sent to {row.backend}, against what the client sent: {added} lines added,{" "}
        {removed} removed.
      </p>
      {row.interventions.length > 0 && (
        <div className="upstream-interventions">
          <h3>What llmux did</h3>
          <Interventions row={row} testId="upstream-interventions" />
        </div>
      )}
      <pre className="diff" data-testid="diff">
        {lines.map((line, i) =>
          line.kind === "fold" ? (
            <div key={i} className="fold">
              ⋯ {line.count} unchanged lines
            </div>
          ) : (
            <div key={i} className={line.kind}>
              {line.kind === "add" ? "+ " : line.kind === "del" ? "- " : "  "}
              {line.text}
            </div>
          ),
        )}
      </pre>
    </>
  );
}

function Frames({ row }: { row: RequestRow }) {
  const frames = useMemo(() => parseFrames(row.upstream_response), [row.upstream_response]);
  if (!row.stream || frames.length === 0) {
    return <pre className="code">{prettyJson(row.upstream_response) || "no answer body"}</pre>;
  }
  return (
    <table className="frames" data-testid="frames">
      <thead>
        <tr>
          <th>ms</th>
          <th>+Δ</th>
          <th>provider frame</th>
        </tr>
      </thead>
      <tbody>
        {frames.map((frame, i) => (
          <tr key={i}>
            <td>{frame.ms.toFixed(1)}</td>
            <td>{i ? (frame.ms - frames[i - 1].ms).toFixed(1) : ""}</td>
            <td>
              <code>{frame.data}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ReplayBox({
  row,
  info,
  onOpen,
}: {
  row: RequestRow;
  info: ServerInfo | null;
  onOpen: (id: string) => void;
}) {
  const [backend, setBackend] = useState("");
  const [model, setModel] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Replayed | null>(null);
  const [error, setError] = useState("");
  const replay = () => {
    setBusy(true);
    setError("");
    api
      .replay(row.id, { backend: backend || undefined, model: model || undefined })
      .then(setResult)
      .catch((err) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return (
    <div className="replay">
      <select aria-label="replay back-end" value={backend} onChange={(e) => setBackend(e.target.value)}>
        <option value="">same back-end</option>
        {info?.backends.map((b) => (
          <option key={b.id} value={b.id} disabled={!b.usable}>
            {b.id}
          </option>
        ))}
      </select>
      <input
        aria-label="replay model"
        placeholder={row.model_used || row.model_requested}
        value={model}
        onChange={(e) => setModel(e.target.value)}
      />
      <button onClick={replay} disabled={busy}>
        {busy ? "Replaying…" : "Replay"}
      </button>
      {error && <span className="err">{error}</span>}
      {result && (
        <span className="replay-result" data-testid="replay-result">
          <span className={`status ${statusClass(result.status)}`}>{result.status}</span> from{" "}
          {result.model}
          {result.request_id && (
            <button className="link" onClick={() => onOpen(result.request_id!)}>
              open
            </button>
          )}
        </span>
      )}
    </div>
  );
}

export function Detail({
  id,
  info,
  onError,
  onOpen,
  onDeleted,
}: {
  id: string;
  info: ServerInfo | null;
  onError: (err: unknown) => void;
  onOpen: (id: string) => void;
  onDeleted: () => void;
}) {
  const [row, setRow] = useState<RequestRow | null>(null);
  const [tab, setTab] = useState<Tab>("overview");
  const [copied, setCopied] = useState(false);

  useEffect(() => {
    let current = true;
    api
      .request(id)
      .then((r) => current && setRow(r))
      .catch((err) => current && onError(err));
    return () => {
      current = false;
    };
  }, [id, onError]);

  if (!row || row.id !== id) return <div className="empty">Loading…</div>;

  const copyCurl = () =>
    api
      .curl(id)
      .then((text) => navigator.clipboard?.writeText(text))
      .then(() => setCopied(true))
      .catch(onError);
  const remove = () => api.deleteRequest(id).then(onDeleted).catch(onError);

  return (
    <div className="detail" data-testid="detail">
      <div className="detail-head">
        <h2>
          <span className={`status ${statusClass(row.status)}`}>{row.status}</span>{" "}
          {row.backend}:{row.model_used || row.model_requested}
        </h2>
        <div className="actions">
          <button onClick={copyCurl}>{copied ? "Copied" : "Copy as curl"}</button>
          <button onClick={remove} className="danger">
            Delete
          </button>
        </div>
      </div>
      <ReplayBox row={row} info={info} onOpen={onOpen} />
      <nav className="tabs" role="tablist">
        {TABS.map((t) => (
          <button
            key={t}
            role="tab"
            aria-selected={tab === t}
            className={tab === t ? "active" : ""}
            onClick={() => setTab(t)}
          >
            {t}
          </button>
        ))}
      </nav>
      <div className="tab-body">
        {tab === "overview" && <Overview row={row} />}
        {tab === "request" && <pre className="code">{prettyJson(row.client_request)}</pre>}
        {tab === "upstream" && <UpstreamDiff row={row} />}
        {tab === "response" && (
          <>
            <Answer row={row} />
            <h3>Sent to the client</h3>
            <pre className="code">{prettyJson(row.client_response)}</pre>
          </>
        )}
        {tab === "frames" && <Frames row={row} />}
        {tab === "headers" && (
          <>
            <h3>Client request headers</h3>
            <pre className="code" data-testid="client-headers">
              {prettyJson(row.client_headers) || "none recorded"}
            </pre>
            <h3>Provider response headers</h3>
            <pre className="code" data-testid="upstream-headers">
              {prettyJson(row.upstream_headers) || "no provider answer (answered by llmux itself)"}
            </pre>
          </>
        )}
      </div>
    </div>
  );
}
