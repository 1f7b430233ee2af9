import { describe, expect, it } from "vitest";
import { updateLine } from "./Updates";
import type { UpdateStatus } from "./types";

const status = (over: Partial<UpdateStatus>): UpdateStatus => ({
  enabled: true,
  disabled_reason: null,
  current_version: "0.1.0",
  available: null,
  downloaded: false,
  last_error: null,
  ...over,
});

describe("updates line", () => {
  it("says why updates are off in a build without an address", () => {
    const line = updateLine(status({ enabled: false, disabled_reason: "this build has no update address" }));
    expect(line).toBe("Updates are off: this build has no update address.");
  });

  it("names the running version, then the release found and whether it is ready", () => {
    expect(updateLine(status({}))).toBe("You run llmux 0.1.0.");
    const found = status({ available: { version: "0.2.0", notes: null, date: null } });
    expect(updateLine(found)).toBe("llmux 0.2.0 is available (you run 0.1.0).");
    expect(updateLine({ ...found, downloaded: true })).toContain("signature checks");
  });
});
