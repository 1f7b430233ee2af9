// Pure formatting helpers for the inspector; unit-tested in format.test.ts.

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return "–";
  if (ms < 1) return "<1 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function formatCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** A Unix time as local clock time, with the date when it is not today. */
export function formatTime(unixSeconds: number, now: Date = new Date()): string {
  const at = new Date(unixSeconds * 1000);
  const time = at.toLocaleTimeString(undefined, { hour12: false });
  return at.toDateString() === now.toDateString()
    ? time
    : `${at.toISOString().slice(0, 10)} ${time}`;
}

/** JSON text indented for reading; anything else unchanged. */
export function prettyJson(text: string): string {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export interface Frame {
  /** Milliseconds after the provider request was sent. */
  ms: number;
  data: string;
}

/** The provider's stream frames as the store keeps them: `ms<TAB>data`, one per line. */
export function parseFrames(upstreamResponse: string): Frame[] {
  const frames: Frame[] = [];
  for (const line of upstreamResponse.split("\n")) {
    const match = /^(\d+(?:\.\d+)?)\t(.*)$/.exec(line);
    if (match) frames.push({ ms: Number(match[1]), data: match[2] });
    else if (frames.length > 0 && line !== "") frames[frames.length - 1].data += `\n${line}`;
  }
  return frames;
}

/** Status class for colouring: ok, client error, server error, or not finished. */
export function statusClass(status: number): "ok" | "warn" | "err" | "none" {
  if (status >= 500) return "err";
  if (status >= 400) return "warn";
  if (status >= 200) return "ok";
  return "none";
}

/** The first line of a prompt, shortened for the list. */
export function preview(text: string, max = 120): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** One call to a back-end, as the capture row's `attempts` chain lists it. */
export interface Attempt {
  leg: string;
  /** `200`, another HTTP status, or `timeout`, `connect`, `unconfigured`. */
  result: string;
}

/** `a:m1=429; b:m2=200` as its attempts, in order; model names may hold `=` or `:`. */
export function parseAttempts(chain: string): Attempt[] {
  if (!chain.trim()) return [];
  return chain.split("; ").map((part) => {
    const at = part.lastIndexOf("=");
    return at < 0 ? { leg: part, result: "" } : { leg: part.slice(0, at), result: part.slice(at + 1) };
  });
}

/** The status class of an attempt's result (failures that are not statuses are errors). */
export function attemptClass(result: string): "ok" | "warn" | "err" | "none" {
  const status = Number(result);
  return Number.isInteger(status) && status > 0 ? statusClass(status) : "err";
}
