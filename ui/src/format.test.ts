import { describe, expect, it } from "vitest";
import {
  attemptClass,
  formatCount,
  formatMs,
  formatTime,
  parseAttempts,
  parseFrames,
  preview,
  prettyJson,
  statusClass,
} from "./format";

describe("format", () => {
  it("reads the attempt chain of a failover, model names with = and : included", () => {
    expect(parseAttempts("")).toEqual([]);
    expect(parseAttempts("openrouter:qwen/qwen3-coder:free=429; zai:glm=4.6=200")).toEqual([
      { leg: "openrouter:qwen/qwen3-coder:free", result: "429" },
      { leg: "zai:glm=4.6", result: "200" },
    ]);
    expect(attemptClass("200")).toBe("ok");
    expect(attemptClass("429")).toBe("warn");
    expect(attemptClass("timeout")).toBe("err");
  });

  it("shows durations in the unit a person reads", () => {
    expect(formatMs(0)).toBe("–");
    expect(formatMs(0.4)).toBe("<1 ms");
    expect(formatMs(12.6)).toBe("13 ms");
    expect(formatMs(1234)).toBe("1.23 s");
    expect(formatMs(42_000)).toBe("42.0 s");
  });

  it("shortens counts", () => {
    expect(formatCount(999)).toBe("999");
    expect(formatCount(1234)).toBe("1.2k");
    expect(formatCount(123_456)).toBe("123k");
    expect(formatCount(2_500_000)).toBe("2.5M");
  });

  it("adds the date only when it is not today", () => {
    const now = new Date("2026-11-25T12:00:00Z");
    expect(formatTime(Date.parse("2026-11-25T11:00:00Z") / 1000, now)).not.toContain("2026");
    expect(formatTime(Date.parse("2026-11-20T11:00:00Z") / 1000, now)).toMatch(/^2026-11-20 /);
  });

  it("indents JSON and leaves other text alone", () => {
    expect(prettyJson('{"a":[1]}')).toBe('{\n  "a": [\n    1\n  ]\n}');
    expect(prettyJson("data: not json")).toBe("data: not json");
    expect(prettyJson("")).toBe("");
  });

  it("reads stream frames with their arrival times, multi-line frames included", () => {
    const frames = parseFrames('12.5\t{"a":1}\n30.0\tline one\nline two\n41\t[DONE]\n');
    expect(frames).toEqual([
      { ms: 12.5, data: '{"a":1}' },
      { ms: 30, data: "line one\nline two" },
      { ms: 41, data: "[DONE]" },
    ]);
    expect(parseFrames("")).toEqual([]);
  });

  it("classes statuses and previews prompts", () => {
    expect([200, 404, 502, 0].map(statusClass)).toEqual(["ok", "warn", "err", "none"]);
    expect(preview("  hello\n  world ")).toBe("hello world");
    expect(preview("x".repeat(200), 10)).toBe(`${"x".repeat(9)}…`);
  });
});
