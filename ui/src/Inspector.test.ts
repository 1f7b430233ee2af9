import { describe, expect, it } from "vitest";
import { listParams, mergeRows, NO_FILTERS } from "./Inspector";
import type { RequestRow } from "./types";

const row = (id: string, started_at: number) => ({ id, started_at }) as RequestRow;

describe("the request list", () => {
  it("asks only for the filters that are set, with a sliding time window", () => {
    expect(listParams(NO_FILTERS)).toEqual({
      since: undefined,
      q: undefined,
      backend: undefined,
      model: undefined,
      session: undefined,
      status: undefined,
      limit: 200,
      offset: 0,
    });
    const before = Date.now() / 1000;
    const p = listParams({ ...NO_FILTERS, q: "pelican", status: "429", within: "3600" }, 200);
    expect(p.q).toBe("pelican");
    expect(p.status).toBe(429);
    expect(p.offset).toBe(200);
    expect(p.since).toBeGreaterThanOrEqual(before - 3600);
    expect(p.since).toBeLessThanOrEqual(Date.now() / 1000 - 3600);
  });

  it("merges polled rows newest first, each id once, fresher copies winning", () => {
    const known = [row("b", 2), row("a", 1)];
    const fresh = [row("c", 3), { ...row("b", 2), status: 200 } as RequestRow];
    const merged = mergeRows(known, fresh);
    expect(merged.map((r) => r.id)).toEqual(["c", "b", "a"]);
    expect(merged[1].status).toBe(200);
  });
});
