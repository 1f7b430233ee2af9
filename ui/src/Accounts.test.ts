import { describe, expect, it } from "vitest";
import { loginState } from "./Accounts";
import type { LoginStatus } from "./types";

const login = (over: Partial<LoginStatus>): LoginStatus => ({
  backend: "chatgpt",
  kind: "openai-oauth",
  path: "~/.codex/auth.json",
  found: true,
  email: null,
  plan: null,
  valid_until: null,
  last_refresh: null,
  refreshes: 0,
  last_error: null,
  login_command: "codex login",
  ...over,
});

describe("subscription logins", () => {
  it("says a good token is valid, an old one is renewed, and a problem wins over both", () => {
    expect(loginState(login({ valid_until: 2_000 }), 1_000).tone).toBe("ok");
    const expired = loginState(login({ valid_until: 500 }), 1_000);
    expect(expired.tone).toBe("warn");
    expect(expired.text).toMatch(/renewed on the next request/);
    const broken = loginState(login({ valid_until: 2_000, last_error: "no login at ~/.codex/auth.json" }), 1_000);
    expect(broken).toEqual({ text: "no login at ~/.codex/auth.json", tone: "bad" });
    expect(loginState(login({}), 1_000).text).toBe("not read yet");
    expect(loginState(login({ found: false }), 1_000)).toEqual({ text: "not logged in", tone: "none" });
    // A login in use whose file was deleted is a problem, not a blank.
    expect(loginState(login({ found: false, last_error: "no login at x" }), 1_000).tone).toBe("bad");
  });
});
