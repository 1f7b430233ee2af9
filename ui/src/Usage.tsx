import { useEffect, useState } from "react";
import { api } from "./api";
import { formatCount, formatMs, formatTime } from "./format";
import type { Timeline, TimelinePoint, Usage } from "./types";

const WINDOWS = [
  { label: "last hour", seconds: 3600 },
  { label: "last day", seconds: 86_400 },
  { label: "last week", seconds: 7 * 86_400 },
];
const GROUPS = ["backend", "model", "key", "session", "day"] as const;

interface Series {
  label: string;
  className: string;
  value: (p: TimelinePoint) => number;
}

/** Where each bucket's bar sits across the window, as fractions of the chart's width. */
export function barLayout(timeline: Timeline): { x: number; width: number }[] {
  const span = Math.max(timeline.until - timeline.since, timeline.bucket, 1);
  const width = Math.min(Math.max(timeline.bucket / span, 0.002), 1);
  // The newest bucket runs past `until`; keep it inside the chart.
  return timeline.data.map((p) => ({
    x: Math.min(Math.max(0, (p.start - timeline.since) / span), 1 - width),
    width,
  }));
}

/** Stacked bars over the window, one per bucket, drawn as SVG. */
export function BarChart({
  title,
  timeline,
  series,
  format,
}: {
  title: string;
  timeline: Timeline;
  series: Series[];
  format: (n: number) => string;
}) {
  const width = 600;
  const height = 120;
  const points = timeline.data;
  const totals = points.map((p) => series.reduce((n, s) => n + s.value(p), 0));
  const max = Math.max(1, ...totals);
  const layout = barLayout(timeline);
  const time = (t: number) => formatTime(t);
  return (
    <figure className="chart" data-testid={`chart-${title}`}>
      <figcaption>
        {title} <span className="muted">peak {format(totals.length ? Math.max(...totals) : 0)}</span>
        {series.map((s) => (
          <span key={s.label} className={`key ${s.className}`}>
            {s.label}
          </span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label={title}>
        {points.map((p, i) => {
          let y = height;
          return series.map((s) => {
            const h = (s.value(p) / max) * (height - 4);
            y -= h;
            return (
              <rect
                key={`${i}-${s.label}`}
                className={s.className}
                x={layout[i].x * width}
                y={y}
                width={Math.max(layout[i].width * width - 1, 1)}
                height={h}
              >
                <title>{`${time(p.start)}: ${s.label} ${format(s.value(p))}`}</title>
              </rect>
            );
          });
        })}
      </svg>
      <div className="axis muted">
        <span>{time(timeline.since)}</span>
        <span>{time(timeline.until)}</span>
      </div>
    </figure>
  );
}

export function UsagePage({ onError }: { onError: (err: unknown) => void }) {
  const [windowSeconds, setWindowSeconds] = useState(86_400);
  const [timeline, setTimeline] = useState<Timeline>({ since: 0, until: 0, bucket: 1, data: [] });
  const [by, setBy] = useState<(typeof GROUPS)[number]>("backend");
  const [usage, setUsage] = useState<Usage[]>([]);
  const [error, setError] = useState("");

  useEffect(() => {
    let current = true;
    api
      .timeline(Date.now() / 1000 - windowSeconds)
      .then((t) => current && setTimeline(t))
      .catch((err) => {
        if (!current) return;
        setError(err instanceof Error ? err.message : String(err));
        onError(err);
      });
    return () => {
      current = false;
    };
  }, [windowSeconds, onError]);

  useEffect(() => {
    let current = true;
    api
      .usage(by)
      .then((u) => current && setUsage(u))
      .catch((err) => current && onError(err));
    return () => {
      current = false;
    };
  }, [by, onError]);

  return (
    <div className="usage">
      <div className="usage-head">
        <select
          aria-label="window"
          value={windowSeconds}
          onChange={(e) => setWindowSeconds(Number(e.target.value))}
        >
          {WINDOWS.map((w) => (
            <option key={w.seconds} value={w.seconds}>
              {w.label}
            </option>
          ))}
        </select>
        {error && <span className="err">{error}</span>}
      </div>
      <BarChart
        title="requests"
        timeline={timeline}
        format={formatCount}
        series={[
          { label: "ok", className: "ok", value: (p) => p.requests - p.errors },
          { label: "errors", className: "err", value: (p) => p.errors },
        ]}
      />
      <BarChart
        title="tokens"
        timeline={timeline}
        format={formatCount}
        series={[
          { label: "input", className: "input", value: (p) => p.input_tokens },
          { label: "output", className: "output", value: (p) => p.output_tokens },
        ]}
      />
      <BarChart
        title="latency"
        timeline={timeline}
        format={formatMs}
        series={[{ label: "mean", className: "latency", value: (p) => p.mean_latency_ms }]}
      />
      <div className="usage-table">
        <nav className="tabs">
          {GROUPS.map((g) => (
            <button key={g} className={g === by ? "active" : ""} onClick={() => setBy(g)}>
              by {g}
            </button>
          ))}
        </nav>
        <table data-testid="usage-table">
          <thead>
            <tr>
              <th>{by}</th>
              <th>requests</th>
              <th>errors</th>
              <th>input tokens</th>
              <th>output tokens</th>
            </tr>
          </thead>
          <tbody>
            {usage.map((u) => (
              <tr key={u.group}>
                <td>{u.group || <span className="muted">(none)</span>}</td>
                <td>{u.requests}</td>
                <td>{u.errors}</td>
                <td>{u.input_tokens}</td>
                <td>{u.output_tokens}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
