import { describe, expect, it } from "vitest";
import { clientState } from "./Clients";
import type { ClientStatus } from "./types";

const client = (over: Partial<ClientStatus>): ClientStatus => ({
  id: "codex",
  name: "Codex CLI",
  installed: true,
  connected: false,
  files: ["/home/u/.codex/config.toml"],
  last_seen: null,
  problem: null,
  ...over,
});

describe("clients", () => {
  it("says whether an agent uses llmux, is only installed, or cannot be edited", () => {
    expect(clientState(client({ connected: true }))).toBe("uses llmux");
    expect(clientState(client({}))).toBe("installed, not connected");
    expect(clientState(client({ installed: false }))).toBe("not installed here");
    expect(clientState(client({ problem: "not valid TOML" }))).toBe("not valid TOML");
  });
});
