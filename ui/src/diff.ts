// What llmux changed: the client's request against the body it sent upstream, both as
// indented JSON, line by line (jsdiff), with long unchanged runs folded.
import { diffLines } from "diff";
import { prettyJson } from "./format";

export type DiffLine =
  | { kind: "same" | "add" | "del"; text: string }
  | { kind: "fold"; count: number };

/** Keeps `context` unchanged lines around each change; folds the rest. */
export function requestDiff(client: string, upstream: string, context = 3): DiffLine[] {
  const lines: DiffLine[] = [];
  for (const part of diffLines(prettyJson(client), prettyJson(upstream))) {
    const kind = part.added ? "add" : part.removed ? "del" : "same";
    for (const text of part.value.replace(/\n$/, "").split("\n")) lines.push({ kind, text });
  }
  const changed = lines.map((l) => l.kind !== "same");
  const near = (i: number) => {
    for (let j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) {
      if (changed[j]) return true;
    }
    return false;
  };
  const out: DiffLine[] = [];
  let folded = 0;
  lines.forEach((line, i) => {
    if (line.kind === "same" && !near(i)) {
      folded++;
      return;
    }
    if (folded) out.push({ kind: "fold", count: folded });
    folded = 0;
    out.push(line);
  });
  if (folded) out.push({ kind: "fold", count: folded });
  return out;
}

/** How many lines were added and removed. */
export function diffSize(lines: DiffLine[]): { added: number; removed: number } {
  return {
    added: lines.filter((l) => l.kind === "add").length,
    removed: lines.filter((l) => l.kind === "del").length,
  };
}
