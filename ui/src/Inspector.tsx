import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { api } from "./api";
import { Detail } from "./Detail";
import { formatCount, formatMs, formatTime, preview, statusClass } from "./format";
import { pollWithoutOverlap } from "./poll";
import type { ListParams, RequestRow, ServerInfo, Stats } from "./types";

const PAGE = 200;
const POLL_MS = 1500;
const ROW_HEIGHT = 54;
const TYPING_PAUSE_MS = 300;

export interface Filters {
  q: string;
  backend: string;
  model: string;
  session: string;
  status: string;
  /** Seconds back from now; "" for any time. */
  within: string;
}

export const NO_FILTERS: Filters = { q: "", backend: "", model: "", session: "", status: "", within: "" };

const TIME_WINDOWS = [
  { label: "last 15 minutes", seconds: 900 },
  { label: "last hour", seconds: 3600 },
  { label: "last day", seconds: 86_400 },
  { label: "last week", seconds: 7 * 86_400 },
];

export function listParams(f: Filters, offset = 0): ListParams {
  return {
    since: f.within ? Date.now() / 1000 - Number(f.within) : undefined,
    q: f.q || undefined,
    backend: f.backend || undefined,
    model: f.model || undefined,
    session: f.session || undefined,
    status: f.status ? Number(f.status) : undefined,
    limit: PAGE,
    offset,
  };
}

/** Saves `text` as a file through the browser's (or webview's) download. */
function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** New rows first, then the known ones, newest first, each id once. */
export function mergeRows(known: RequestRow[], fresh: RequestRow[]): RequestRow[] {
  const byId = new Map(known.map((r) => [r.id, r]));
  for (const row of fresh) byId.set(row.id, row);
  return [...byId.values()].sort((a, b) => b.started_at - a.started_at);
}

function StatsStrip({ stats }: { stats: Stats | null }) {
  if (!stats) return null;
  const errors = stats.backends.reduce((n, b) => n + b.errors, 0);
  const tokens = stats.backends.reduce((n, b) => n + b.input_tokens + b.output_tokens, 0);
  const dropped = stats.dropped + stats.wire_capture_dropped;
  return (
    <div className="stats" data-testid="stats">
      <span>{formatCount(stats.requests)} requests</span>
      <span className={errors ? "warn" : ""}>{formatCount(errors)} errors</span>
      <span>{formatCount(tokens)} tokens</span>
      <span
        className={dropped ? "err" : "muted"}
        title="records a capture writer dropped because it fell behind"
      >
        {formatCount(dropped)} dropped
      </span>
    </div>
  );
}

function RequestItem({
  row,
  selected,
  onSelect,
}: {
  row: RequestRow;
  selected: boolean;
  onSelect: () => void;
}) {
  const route =
    row.model_requested && row.model_requested !== row.model_used
      ? `${row.model_requested} → ${row.backend}:${row.model_used}`
      : `${row.backend}:${row.model_used || row.model_requested}`;
  return (
    <button
      className={`request ${selected ? "selected" : ""}`}
      onClick={onSelect}
      data-testid="request-row"
      data-id={row.id}
    >
      <span className="line1">
        <span className={`status ${statusClass(row.status)}`}>{row.status || "…"}</span>
        <span className="route">{route}</span>
        <span className="time">{formatTime(row.started_at)}</span>
      </span>
      <span className="line2">
        <span className="prompt">{preview(row.prompt_text) || <i>no text</i>}</span>
        <span className="metrics">
          {row.frontend.replace("openai_", "")} · {formatMs(row.latency_ms)} ·{" "}
          {formatCount(row.input_tokens + row.output_tokens)}
          {row.tokens_estimated ? "~" : ""} tok
        </span>
      </span>
    </button>
  );
}

export function Inspector({
  info,
  onError,
}: {
  info: ServerInfo | null;
  onError: (err: unknown) => void;
}) {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  // What is typed in the text filters; applied after a pause in typing.
  const [typed, setTyped] = useState({ q: "", model: "", session: "" });
  const [rows, setRows] = useState<RequestRow[]>([]);
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState("");
  const [live, setLive] = useState(true);
  const [selected, setSelected] = useState<string | null>(() => {
    const m = /[#&?]id=([^&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  });
  const [exhausted, setExhausted] = useState(false);
  const loadingMore = useRef(false);

  const report = useCallback(
    (err: unknown) => {
      setError(err instanceof Error ? err.message : String(err));
      onError(err);
    },
    [onError],
  );

  // A new filter starts over; polling then merges the newest page in.
  useEffect(() => {
    let current = true;
    const refresh = (replace: boolean) => {
      const params = listParams(filters);
      return Promise.all([api.requests(params), api.stats()])
        .then(([fresh, s]) => {
          if (!current) return;
          // A time window slides: rows that fell out of it leave the list.
          const inWindow = (r: RequestRow) => !params.since || r.started_at >= params.since;
          setRows((known) => (replace ? fresh : mergeRows(known, fresh).filter(inWindow)));
          if (replace) setExhausted(fresh.length < PAGE);
          setStats(s);
          setError("");
        })
        .catch((err) => current && report(err));
    };
    refresh(true);
    const stop = live ? pollWithoutOverlap(() => refresh(false), POLL_MS) : undefined;
    return () => {
      current = false;
      stop?.();
    };
  }, [filters, live, report]);

  const loadMore = useCallback(() => {
    if (loadingMore.current || exhausted) return;
    loadingMore.current = true;
    api
      .requests(listParams(filters, rows.length))
      .then((older) => {
        setRows((known) => mergeRows(known, older));
        setExhausted(older.length < PAGE);
      })
      .catch(report)
      .finally(() => {
        loadingMore.current = false;
      });
  }, [filters, rows.length, exhausted, report]);

  const scroller = useRef<HTMLDivElement>(null);
  // eslint-disable-next-line react-hooks/incompatible-library -- the virtualizer is read during render by design
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
  });
  const items = virtualizer.getVirtualItems();
  const last = items[items.length - 1];
  useEffect(() => {
    if (last && last.index >= rows.length - 20) loadMore();
  }, [last, rows.length, loadMore]);

  const select = (id: string) => {
    setSelected(id);
    history.replaceState(null, "", `#/?id=${encodeURIComponent(id)}`);
  };

  const backends = useMemo(
    () =>
      [...new Set([...(info?.backends.map((b) => b.id) ?? []), ...rows.map((r) => r.backend)])]
        .filter(Boolean)
        .sort(),
    [info, rows],
  );
  const statuses = useMemo(
    () => [...new Set(rows.map((r) => r.status).filter(Boolean))].sort(),
    [rows],
  );

  const set = (change: Partial<Filters>) => setFilters((f) => ({ ...f, ...change }));
  const applyTyped = useCallback(
    () =>
      setFilters((f) => {
        const next = { q: typed.q.trim(), model: typed.model.trim(), session: typed.session.trim() };
        const same = f.q === next.q && f.model === next.model && f.session === next.session;
        return same ? f : { ...f, ...next };
      }),
    [typed],
  );
  useEffect(() => {
    const timer = setTimeout(applyTyped, TYPING_PAUSE_MS);
    return () => clearTimeout(timer);
  }, [applyTyped]);
  const type = (change: Partial<typeof typed>) => setTyped((t) => ({ ...t, ...change }));

  return (
    <div className="inspector">
      <section className="list-pane">
        <form
          className="filters"
          onSubmit={(e) => {
            e.preventDefault();
            applyTyped();
          }}
        >
          <input
            type="search"
            placeholder="Search prompts and answers"
            aria-label="search"
            value={typed.q}
            onChange={(e) => type({ q: e.target.value })}
            onKeyDown={(e) => e.key === "Enter" && applyTyped()}
          />
          <select
            aria-label="back-end"
            value={filters.backend}
            onChange={(e) => set({ backend: e.target.value })}
          >
            <option value="">all back-ends</option>
            {backends.map((b) => (
              <option key={b}>{b}</option>
            ))}
          </select>
          <select
            aria-label="status"
            value={filters.status}
            onChange={(e) => set({ status: e.target.value })}
          >
            <option value="">any status</option>
            {statuses.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
          <select
            aria-label="time"
            value={filters.within}
            onChange={(e) => set({ within: e.target.value })}
          >
            <option value="">any time</option>
            {TIME_WINDOWS.map((w) => (
              <option key={w.seconds} value={w.seconds}>
                {w.label}
              </option>
            ))}
          </select>
          <input
            placeholder="model"
            aria-label="model"
            value={typed.model}
            onChange={(e) => type({ model: e.target.value })}
          />
          <input
            placeholder="session"
            aria-label="session"
            value={typed.session}
            onChange={(e) => type({ session: e.target.value })}
          />
          <label className="live">
            <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} />
            live
          </label>
          <button
            type="button"
            className="export link"
            onClick={() =>
              api
                .exportJsonl({ ...listParams(filters), limit: 1000 })
                .then((lines) => download("llmux-requests.jsonl", lines))
                .catch(report)
            }
          >
            export
          </button>
        </form>
        <StatsStrip stats={stats} />
        {error && <div className="error-banner">{error}</div>}
        <div className="list" ref={scroller} data-testid="request-list">
          {rows.length === 0 && !error && (
            <div className="empty">
              No captured requests{filters.q ? " match this search" : " yet"}. Send one through
              llmux and it shows up here.
            </div>
          )}
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {items.map((item) => {
              const row = rows[item.index];
              return (
                <div
                  key={row.id}
                  style={{
                    position: "absolute",
                    top: 0,
                    left: 0,
                    right: 0,
                    height: item.size,
                    transform: `translateY(${item.start}px)`,
                  }}
                >
                  <RequestItem
                    row={row}
                    selected={row.id === selected}
                    onSelect={() => select(row.id)}
                  />
                </div>
              );
            })}
          </div>
        </div>
      </section>
      <section className="detail-pane">
        {selected ? (
          <Detail
            id={selected}
            info={info}
            onError={report}
            onOpen={select}
            onDeleted={() => {
              setRows((known) => known.filter((r) => r.id !== selected));
              setSelected(null);
            }}
          />
        ) : (
          <div className="empty">Pick a request to see both legs of its traffic.</div>
        )}
      </section>
    </div>
  );
}
