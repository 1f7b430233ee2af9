// The inspector at /ui, end to end: a real llmux binary with its SQLite capture store, a fake
// OpenAI provider on loopback, and Debian's chromium driven by playwright-core.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startFakeOpenAI } from "./fake-openai.mjs";
import { startLlmux, targetDir } from "./llmux.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = path.join(targetDir, "screenshots");
const WAIT = { timeout: 15_000 };

let provider;
let llmux;
let browser;
let page;
let dir;
const pageErrors = [];

async function chat(content, { stream = false, model = "fast" } = {}) {
  const response = await fetch(`${llmux.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "inspector-e2e" },
    body: JSON.stringify({ model, stream, messages: [{ role: "user", content }] }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return text;
}

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `inspector-${name}.png`) });
const rows = () => page.getByTestId("request-row");

/** Searches and waits until the list shows `count` rows, each mentioning `word`. */
async function search(word, count) {
  await page.getByLabel("search").fill(word);
  await page.getByLabel("search").press("Enter");
  await page.waitForFunction(
    ([w, n]) => {
      const found = [...document.querySelectorAll('[data-testid="request-row"]')];
      return found.length === n && found.every((r) => r.textContent.includes(w));
    },
    [word, count],
    WAIT,
  );
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(path.join(tmpdir(), "llmux-inspector-"));
  provider = await startFakeOpenAI();
  // An openai-compatible back-end at the fake provider, beside the built-in mock.
  const config = path.join(dir, "llmux.toml");
  writeFileSync(
    config,
    `default_backend = "fake"\n\n[backends.fake]\ntype = "openai-compatible"\nbase_url = "${provider.url}"\n` +
      // Nothing listens on port 9: the route's first leg fails to connect, the second answers.
      `\n[backends.down]\ntype = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n` +
      `\n[routes.sturdy]\nlegs = ["down:gpt-fake", "fake:gpt-fake"]\n`,
  );
  llmux = await startLlmux([
    "--config",
    config,
    "--capture-db",
    path.join(dir, "capture.db"),
    "--model-alias",
    "^fast$=fake:gpt-fake",
  ]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("console", (msg) => msg.type() === "error" && pageErrors.push(msg.text()));
});

after(async () => {
  await browser?.close();
  await llmux?.stop();
  await provider?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("traffic shows up live, is searchable, and a detail shows what llmux changed", async () => {
  await page.goto(`${llmux.url}/ui/`);
  await page.getByText("No captured requests yet").waitFor(WAIT);

  await chat("Describe a pelican riding a bicycle");
  await chat("Name three sorting algorithms");
  await chat("Stream a sentence about otters", { stream: true });

  // No reload: the list polls.
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="request-row"]').length === 3,
    null,
    WAIT,
  );
  assert.match(await page.getByTestId("stats").innerText(), /3 requests/);
  await shot("live-list");

  await search("pelican", 1);

  await rows().first().click();
  const detail = page.getByTestId("detail");
  await detail.getByText("Describe a pelican riding a bicycle").first().waitFor(WAIT);
  assert.match(await detail.innerText(), /Captured answers arrive word by word\./);
  assert.match(await detail.innerText(), /11 in · 6 out/);

  await page.getByRole("tab", { name: "upstream" }).click();
  const diff = page.getByTestId("diff");
  await diff.waitFor(WAIT);
  const diffText = await diff.innerText();
  assert.match(diffText, /- {3}"model": "fast"/);
  assert.match(diffText, /\+ {3}"model": "gpt-fake"/);
  assert.match(await page.getByTestId("diff-summary").innerText(), /sent to fake/);
  await shot("diff");

  await page.getByRole("tab", { name: "headers" }).click();
  assert.match(await page.getByTestId("client-headers").innerText(), /"user-agent": "inspector-e2e"/);
  const upstreamHeaders = await page.getByTestId("upstream-headers").innerText();
  assert.match(upstreamHeaders, /":status": 200/);
  assert.match(upstreamHeaders, /"content-type": "application\/json"/);
});

test("a streamed request shows its provider frames with arrival times", async () => {
  await search("otters", 1);
  await rows().first().click();
  // The detail keeps the tab it was on; the prompt is on the overview.
  await page.getByRole("tab", { name: "overview" }).click();
  await page.getByTestId("detail").getByText("Stream a sentence about otters").first().waitFor(WAIT);
  await page.getByRole("tab", { name: "frames" }).click();
  const frames = page.getByTestId("frames");
  await frames.waitFor(WAIT);
  const lines = await frames.locator("tbody tr").allInnerTexts();
  // Role chunk, six words, finish, usage, [DONE].
  assert.ok(lines.length >= 8, `frames: ${lines.join("\n")}`);
  assert.ok(lines.some((l) => l.includes('" otters"') || l.includes("word")), lines.join("\n"));
  const times = lines.map((l) => Number(l.split("\t")[0]));
  for (let i = 1; i < times.length; i++) assert.ok(times[i] >= times[i - 1], `times: ${times}`);
  assert.ok(times.at(-1) - times[0] >= 50, `the provider paused 15 ms per word: ${times}`);
  await shot("frames");
});

test("replaying a request to another back-end captures the replay as a new request", async () => {
  await search("sorting", 1);
  await rows().first().click();
  await page.getByRole("tab", { name: "overview" }).click();
  await page.getByTestId("detail").getByText("Name three sorting algorithms").first().waitFor(WAIT);
  await page.getByLabel("replay back-end").selectOption("mock");
  await page.getByLabel("replay model").fill("mock-model");
  await page.getByRole("button", { name: "Replay" }).click();
  const result = page.getByTestId("replay-result");
  await result.waitFor(WAIT);
  assert.match(await result.innerText(), /200 from mock:mock-model/);
  await shot("replay");

  await result.getByRole("button", { name: "open" }).click();
  await page.getByTestId("detail").getByText("mock:mock-model").first().waitFor(WAIT);
  assert.match(await page.getByTestId("detail").innerText(), /replay-req_/);
  // The replay is a captured request like any other: it matches the search too.
  await search("sorting", 2);
  assert.equal(provider.requests.length, 3, "the replay went to the mock, not the provider");

  // Export takes the list's filters: the two "sorting" requests, with their bodies.
  const [download] = await Promise.all([
    page.waitForEvent("download", WAIT),
    page.getByRole("button", { name: "export" }).click(),
  ]);
  const lines = readFileSync(await download.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  for (const line of lines) assert.match(line.client_request, /sorting/);
});

test("the usage page charts requests, tokens and latency and totals per back-end", async () => {
  await page.goto(`${llmux.url}/ui/#/usage`);
  await page.getByTestId("chart-requests").waitFor(WAIT);
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="chart-requests"] rect').length > 0,
    null,
    WAIT,
  );
  const table = page.getByTestId("usage-table");
  await table.getByText("fake").waitFor(WAIT);
  const fakeRow = await table.locator("tr", { hasText: "fake" }).innerText();
  assert.match(fakeRow, /fake\s+3\s+0/);
  await shot("usage");
  assert.deepEqual(pageErrors, []);
});

test("the tool calls of a Gemini stream show in its answer", async () => {
  // Gemini's default stream is one JSON array; the answer comes from what llmux recorded.
  const response = await fetch(`${llmux.url}/v1beta/models/mock:mock-model:streamGenerateContent`, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "inspector-e2e" },
    body: JSON.stringify({
      contents: [{ role: "user", parts: [{ text: "Look at the gecko file" }] }],
      tools: [{ functionDeclarations: [{ name: "read_file", parameters: { type: "object" } }] }],
    }),
  });
  assert.equal(response.status, 200, await response.text());
  await page.goto(`${llmux.url}/ui/`);
  await search("gecko", 1);
  await rows().first().click();
  await page.getByRole("tab", { name: "overview" }).click();
  const answer = page.getByTestId("answer");
  await answer.locator(".tool-call .tool-name", { hasText: "read_file" }).waitFor(WAIT);
  assert.equal(await answer.locator(".tool-call").count(), 1);
  await shot("tool-call");
});

test("a request that failed over shows each attempt in its overview", async () => {
  await chat("failover walrus", { model: "sturdy" });
  await page.goto(`${llmux.url}/ui/`);
  await search("walrus", 1);
  await rows().first().click();
  await page.getByRole("tab", { name: "overview" }).click();
  const attempts = page.getByTestId("attempts");
  await attempts.waitFor(WAIT);
  const items = await attempts.locator("li").allTextContents();
  assert.deepEqual(items, ["down:gpt-fake connect", "fake:gpt-fake 200"]);
  assert.equal(await attempts.locator(".status.err").count(), 1);
  await shot("attempts");
});

test("what llmux did to a request shows in its overview and beside the upstream diff", async () => {
  const response = await fetch(`${llmux.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "inspector-e2e" },
    body: JSON.stringify({
      model: "fast",
      messages: [{ role: "user", content: "start over, cormorant" }],
      tools: [{ type: "function", function: { name: "Bash", parameters: { type: "object" } } }],
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.match(body.choices[0].message.content, /llmux stopped a tool call/);
  await page.goto(`${llmux.url}/ui/`);
  await search("cormorant", 1);
  await rows().first().click();
  await page.getByRole("tab", { name: "overview" }).click();
  const did = page.getByTestId("interventions");
  await did.waitFor(WAIT);
  const items = await did.locator("li").allTextContents();
  assert.equal(items.length, 1);
  assert.match(items[0], /dangerous-commands.*stopped `git reset --hard`/);
  await shot("interventions");
  // Next to the upstream diff too: what the stages did beside what changed on the wire.
  await page.getByRole("tab", { name: "upstream" }).click();
  const beside = page.getByTestId("upstream-interventions");
  await beside.waitFor(WAIT);
  assert.match(await beside.textContent(), /dangerous-commands.*stopped `git reset --hard`/);
  await page.getByTestId("diff").waitFor(WAIT);
  await shot("upstream-interventions");
});
