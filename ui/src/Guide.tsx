// The first-run guide at the top of the settings page, while no provider is set up: add a
// key (or a subscription login), send a test request and see the answer, connect agents.
import { useState } from "react";
import { api } from "./api";
import type { BackendSetting, Replayed } from "./types";

/** A model worth trying on each keyed back-end type; the mock needs no key. */
const TRY_MODEL: Record<string, string> = {
  openai: "gpt-4o-mini",
  anthropic: "claude-haiku-4-5",
  gemini: "gemini-2.5-flash",
  openrouter: "openai/gpt-4o-mini",
  zai: "glm-4.6",
  "zai-coding-plan": "glm-4.6",
};

/** Whether a provider is set up: a keyed back-end with a key, or one the user added. */
export function hasProvider(backends: BackendSetting[]): boolean {
  return backends.some((b) => (b.requires_key && b.key_source != null) || (b.in_file && !b.builtin));
}

/** The model the test request suggests: the first back-end with a key, else the mock. */
export function suggestedModel(backends: BackendSetting[]): string {
  const keyed = backends.find((b) => b.requires_key && b.key_source != null && TRY_MODEL[b.type]);
  return keyed ? `${keyed.id}:${TRY_MODEL[keyed.type]}` : "mock:mock-model";
}

/** The text of a test answer: the model's words, or the error llmux or the provider gave. */
export function answerOf(replayed: Replayed): string {
  const body = replayed.body as {
    choices?: { message?: { content?: string } }[];
    error?: { message?: string };
  } | null;
  return body?.choices?.[0]?.message?.content ?? body?.error?.message ?? JSON.stringify(replayed.body);
}

export function GuideSection({ backends, canStoreKeys }: { backends: BackendSetting[]; canStoreKeys: boolean }) {
  const [model, setModel] = useState(() => suggestedModel(backends));
  const [answer, setAnswer] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const send = () => {
    setBusy(true);
    api
      .testRequest(model)
      .then((r) => setAnswer({ ok: r.status === 200, text: answerOf(r) }))
      .catch((err) => setAnswer({ ok: false, text: String(err.message ?? err) }))
      .finally(() => setBusy(false));
  };
  return (
    <section data-testid="guide" className="guide">
      <h2>Getting started</h2>
      <ol>
        <li>
          Add a provider:{" "}
          {canStoreKeys
            ? "enter a key under Keys below (it goes to your OS keychain),"
            : "set its key in llmux's environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENROUTER_API_KEY, ...) and restart llmux,"}{" "}
          or log in with a subscription CLI (Codex, Claude Code, Gemini CLI) and use its back-end, listed under
          Subscription logins.
        </li>
        <li>
          Try it:{" "}
          <input aria-label="test model" value={model} onChange={(e) => setModel(e.target.value)} />{" "}
          <button disabled={busy} onClick={send}>
            {busy ? "Sending…" : "Send a test request"}
          </button>
          {answer && (
            <p className={answer.ok ? "" : "err"} role="status" aria-label="test answer">
              {answer.text}
            </p>
          )}
        </li>
        <li>Connect your coding agents under Clients below.</li>
      </ol>
    </section>
  );
}
