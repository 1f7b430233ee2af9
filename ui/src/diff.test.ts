import { describe, expect, it } from "vitest";
import { diffSize, requestDiff } from "./diff";

describe("request diff", () => {
  it("shows what llmux changed and folds what it kept", () => {
    const client = JSON.stringify({ model: "fast", messages: [{ role: "user", content: "hi !/model(x)" }], a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7 });
    const upstream = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7 });
    const lines = requestDiff(client, upstream, 1);
    expect(diffSize(lines)).toEqual({ added: 2, removed: 2 });
    expect(lines).toContainEqual({ kind: "del", text: '  "model": "fast",' });
    expect(lines).toContainEqual({ kind: "add", text: '  "model": "gpt-4o",' });
    expect(lines.some((l) => l.kind === "fold")).toBe(true);
  });

  it("has no changes for equal bodies, whatever their formatting", () => {
    const lines = requestDiff('{"a":1,"b":[1,2]}', '{ "a": 1, "b": [1, 2] }');
    expect(diffSize(lines)).toEqual({ added: 0, removed: 0 });
    expect(lines).toEqual([{ kind: "fold", count: 7 }]);
  });
});
