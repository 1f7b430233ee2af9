// The first-run guide on the settings page, end to end: llmux started with no config file
// and no provider keys (a throwaway HOME), Debian's chromium via playwright-core. The
// guide shows, a test request to the keyless mock answers, and one to a provider without
// a key says which variable to set.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startLlmux, targetDir } from "./llmux.mjs";

const WAIT = { timeout: 15_000 };
let llmux;
let browser;
let page;

before(async () => {
  mkdirSync(path.join(targetDir, "screenshots"), { recursive: true });
  // No provider keys from the machine either.
  llmux = await startLlmux([], { OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", GEMINI_API_KEY: "", OPENROUTER_API_KEY: "", ZAI_API_KEY: "" });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
});

after(async () => {
  await browser?.close();
  await llmux?.stop();
});

test("with no provider the guide shows, and its test request answers or says what to set", async () => {
  await page.goto(`${llmux.url}/ui/#/settings`);
  const guide = page.getByTestId("guide");
  await guide.waitFor(WAIT);
  const model = guide.getByLabel("test model");
  assert.equal(await model.inputValue(), "mock:mock-model");
  await guide.getByRole("button", { name: "Send a test request" }).click();
  const answer = guide.getByRole("status", { name: "test answer" });
  await answer.getByText("Hello from the llmux mock back-end.").waitFor(WAIT);
  await page.screenshot({ path: path.join(targetDir, "screenshots", "settings-guide.png"), fullPage: true });

  await model.fill("openai:gpt-4o-mini");
  await guide.getByRole("button", { name: "Send a test request" }).click();
  await answer.getByText(/OPENAI_API_KEY/).waitFor(WAIT);
  assert.match(await answer.getAttribute("class"), /err/);
});
