import { describe, expect, it } from "vitest";
import { kindOf, parseInput, problemsFor } from "./Settings";
import type { Kind } from "./types";

/** A setting with `value`, described by the settings table as `kind` when given. */
function setting(value: unknown, kind?: Kind) {
  return { value, about: kind ? { kind, help: "", env: null, flags: [] } : null };
}

describe("settings form", () => {
  it("keeps a typed value in the type the setting has", () => {
    expect(parseInput(setting(8000), "9000")).toBe(9000);
    expect(parseInput(setting(8000), "")).toBe("");
    expect(parseInput(setting(8000), "lots")).toBe("lots"); // sent as is: the engine says what is wrong
    expect(parseInput(setting(["a"]), "x, y ,, z")).toEqual(["x", "y", "z"]);
    expect(parseInput(setting("openai"), "mock")).toBe("mock");
  });

  it("reads an unset setting as the settings table's kind says, and an emptied one as unset", () => {
    expect(parseInput(setting(null, "integer"), "42")).toBe(42);
    expect(parseInput(setting(null, "list"), "a, b")).toEqual(["a", "b"]);
    expect(parseInput(setting(null, "text"), "openai:gpt-4o")).toBe("openai:gpt-4o");
    expect(parseInput(setting(null, "text"), "  ")).toBeNull();
    expect(kindOf(setting(null, "bool"))).toBe("bool");
    expect(kindOf(setting(0.5))).toBe("number");
    expect(kindOf(setting([{ pattern: "a" }]))).toBe("aliases");
  });

  it("finds the problems about a field and what lies under it", () => {
    const problems = [
      { key: "proxy.port", message: "bad port" },
      { key: "backends.local.base_url", message: "bad url" },
      { key: "proxy.portal", message: "another key" },
      { key: null, message: "general" },
    ];
    expect(problemsFor(problems, "proxy.port").map((p) => p.message)).toEqual(["bad port"]);
    expect(problemsFor(problems, "backends.local").map((p) => p.message)).toEqual(["bad url"]);
  });
});
