// The inspector against an llmux that has a proxy key: the page asks for it, a wrong key is
// refused without losing the page, the right one shows the requests. Chromium via
// playwright-core, the real binary, the built-in mock back-end (no provider needed).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startLlmux, targetDir } from "./llmux.mjs";

const KEY = "inspector-e2e-proxy-key";
const WAIT = { timeout: 15_000 };
let llmux;
let browser;
let dir;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "llmux-inspector-auth-"));
  mkdirSync(path.join(targetDir, "screenshots"), { recursive: true });
  llmux = await startLlmux(
    ["--capture-db", path.join(dir, "capture.db"), "--default-backend", "mock"],
    { LLM_INTERACTIVE_PROXY_API_KEY: KEY },
  );
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  await llmux?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the page asks for the proxy key, refuses a wrong one, and works with the right one", async () => {
  const answer = await fetch(`${llmux.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: "mock-model", messages: [{ role: "user", content: "keyed hello" }] }),
  });
  assert.equal(answer.status, 200);

  const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  await page.goto(`${llmux.url}/ui/`);
  const prompt = page.getByLabel("API key");
  await prompt.waitFor(WAIT);
  await page.screenshot({ path: path.join(targetDir, "screenshots", "inspector-key-prompt.png") });

  assert.equal(await page.getByRole("alert").count(), 0, "no key tried yet");
  await prompt.fill("not-the-key");
  await page.getByRole("button", { name: "Continue" }).click();
  // Refused: the prompt comes back and says so.
  await page.getByRole("alert").getByText("llmux refused that key").waitFor(WAIT);

  await page.getByLabel("API key").fill(KEY);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByTestId("request-row").first().waitFor(WAIT);
  assert.match(await page.getByTestId("request-row").first().innerText(), /keyed hello/);
  // Kept in this browser only: a reload goes straight to the list.
  await page.reload();
  await page.getByTestId("request-row").first().waitFor(WAIT);
  await page.close();
});
