import { describe, expect, it } from "vitest";
import { answerOf, hasProvider, suggestedModel } from "./Guide";
import type { BackendSetting } from "./types";

const backend = (over: Partial<BackendSetting>): BackendSetting => ({
  id: "openai",
  type: "openai",
  base_url: "https://api.openai.com/v1",
  api_key_env: "OPENAI_API_KEY",
  models: [],
  key_source: null,
  requires_key: true,
  builtin: true,
  in_file: false,
  ...over,
});

describe("first-run guide", () => {
  it("shows until a keyed back-end has a key or the user added one", () => {
    expect(hasProvider([backend({}), backend({ id: "mock", type: "mock", requires_key: false })])).toBe(false);
    expect(hasProvider([backend({ key_source: "OPENAI_API_KEY" })])).toBe(true);
    expect(hasProvider([backend({ id: "local", builtin: false, in_file: true, requires_key: false })])).toBe(true);
  });

  it("suggests a model of the first provider with a key, else the mock", () => {
    expect(suggestedModel([backend({})])).toBe("mock:mock-model");
    expect(suggestedModel([backend({ id: "claude", type: "anthropic", key_source: "K" })])).toBe(
      "claude:claude-haiku-4-5",
    );
  });

  it("reads the answer's text or its error", () => {
    const ok = { status: 200, request_id: null, model: "m", body: { choices: [{ message: { content: "Hi!" } }] } };
    expect(answerOf(ok)).toBe("Hi!");
    const err = { status: 503, request_id: null, model: "m", body: { error: { message: "no API key; set X" } } };
    expect(answerOf(err)).toBe("no API key; set X");
  });
});
