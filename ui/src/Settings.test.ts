import { describe, expect, it } from "vitest";
import { parseInput, problemsFor } from "./Settings";

describe("settings form", () => {
  it("keeps a typed value in the type the setting has", () => {
    expect(parseInput(8000, "9000")).toBe(9000);
    expect(parseInput(8000, "")).toBe("");
    expect(parseInput(8000, "lots")).toBe("lots"); // sent as is: the engine says what is wrong
    expect(parseInput(["a"], "x, y ,, z")).toEqual(["x", "y", "z"]);
    expect(parseInput("openai", "mock")).toBe("mock");
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
